"""Handler hooks: their arguments, what their return values mean, and failures.

Each hook is driven by a real client (smtplib and aiosmtplib) on both event
loops; the hooks record what they were called with.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from conftest import LOOP_KINDS, Data, RawClient, Step

from smtpkit.smtp import SMTP, Envelope, Session

pytestmark = pytest.mark.parametrize("loop_kind", LOOP_KINDS)

Talk = Callable[[int, list[Step]], list[str]]
INTERNAL_ERROR = "451 4.3.0 Requested action aborted: local error in processing"
MAIL = ["EHLO client.test", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>"]


class Calls:
    """Records hook calls as (name, args) from the server thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.lock = threading.Lock()

    def record(self, name: str, *args: Any) -> None:
        with self.lock:
            self.calls.append((name, args))

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [args for called, args in self.calls if called == name]


# -- Command hooks -----------------------------------------------------------


class CommandHooks(Calls):
    async def handle_HELO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        self.record("HELO", server, session, envelope, hostname)
        session.host_name = hostname
        return "250 helo hook"

    async def handle_NOOP(
        self, server: SMTP, session: Session, envelope: Envelope, arg: str | None
    ) -> str:
        self.record("NOOP", arg)
        return "250 noop hook"

    async def handle_VRFY(
        self, server: SMTP, session: Session, envelope: Envelope, address: str
    ) -> str:
        self.record("VRFY", address)
        return "550 no such user"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.record("RSET", envelope.mail_from)
        return "250 rset hook"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.record("QUIT")
        return "221 quit hook"


def test_command_hooks(server: Any, talk: Talk) -> None:
    hooks = CommandHooks()
    running = server(hooks)
    replies = talk(
        running.port,
        [
            "HELO client.test",
            "NOOP",
            "NOOP some text",
            "VRFY <anne@example.com>",
            "MAIL FROM:<a@example.com>",
            "RSET",
            "QUIT",
        ],
    )
    assert replies == [
        "250 helo hook",
        "250 noop hook",
        "250 noop hook",
        "550 no such user",
        "250 OK",
        "250 rset hook",
        "221 quit hook",
    ]
    ((server_arg, session, envelope, hostname),) = hooks.named("HELO")
    assert isinstance(server_arg, SMTP)
    assert isinstance(session, Session)
    assert isinstance(envelope, Envelope)
    assert hostname == "client.test"
    assert hooks.named("NOOP") == [(None,), ("some text",)]
    assert hooks.named("VRFY") == [("anne@example.com",)]
    # RSET sees the envelope after it was reset.
    assert hooks.named("RSET") == [(None,)]
    assert hooks.named("QUIT") == [()]


def test_helo_hook_must_set_host_name(server: Any, talk: Talk) -> None:
    class Forgetful:
        async def handle_HELO(
            self, server: SMTP, session: Session, envelope: Envelope, hostname: str
        ) -> str:
            return "250 fine"

    running = server(Forgetful())
    replies = talk(running.port, ["HELO client.test", "MAIL FROM:<a@example.com>"])
    assert replies == ["250 fine", "503 Error: send HELO first"]


def test_plain_function_hooks(server: Any, talk: Talk) -> None:
    class Plain:
        def handle_NOOP(
            self, server: SMTP, session: Session, envelope: Envelope, arg: str | None
        ) -> str:
            return f"250 plain {arg}"

    running = server(Plain())
    assert talk(running.port, ["NOOP x"]) == ["250 plain x"]


# -- EHLO ----------------------------------------------------------------------


def test_ehlo_hook_gets_and_returns_the_responses(server: Any, talk: Talk) -> None:
    seen: list[list[str]] = []

    class Ehlo:
        async def handle_EHLO(
            self,
            server: SMTP,
            session: Session,
            envelope: Envelope,
            hostname: str,
            responses: list[str],
        ) -> list[str]:
            seen.append(list(responses))
            session.host_name = hostname
            return [*responses[:-1], "250-XPING", "250 HELP"]

    running = server(Ehlo())
    replies = talk(running.port, ["EHLO client.test", "MAIL FROM:<a@example.com>"])
    assert seen == [
        ["250-smtp.example.test", "250-SIZE 33554432", "250-8BITMIME", "250-PIPELINING", "250 HELP"]
    ]
    assert replies[0].split("\n") == [
        "250 smtp.example.test",
        "SIZE 33554432",
        "8BITMIME",
        "PIPELINING",
        "XPING",
        "HELP",
    ]
    assert replies[1] == "250 OK"


def test_ehlo_hook_may_refuse(server: Any, talk: Talk) -> None:
    class Refuse:
        async def handle_EHLO(
            self,
            server: SMTP,
            session: Session,
            envelope: Envelope,
            hostname: str,
            responses: list[str],
        ) -> list[str]:
            return ["550 not you"]

    running = server(Refuse())
    replies = talk(running.port, ["EHLO client.test", "MAIL FROM:<a@example.com>"])
    assert replies == ["550 not you", "503 Error: send HELO first"]


def test_four_argument_ehlo_hook_is_deprecated(server: Any, raw: Callable[..., RawClient]) -> None:
    class OldEhlo:
        async def handle_EHLO(
            self, server: SMTP, session: Session, envelope: Envelope, hostname: str
        ) -> str:
            session.host_name = hostname
            await server.push("250-XOLD")
            return "250 HELP"

    running = server(OldEhlo())
    client = raw(running.port)
    with pytest.warns(DeprecationWarning, match="handle_EHLO"):
        client.send("EHLO client.test\r\n")
        lines = client.reply()
    assert lines == [
        "250-smtp.example.test",
        "250-SIZE 33554432",
        "250-8BITMIME",
        "250-PIPELINING",
        "250-XOLD",
        "250 HELP",
    ]
    assert client.command("MAIL FROM:<a@example.com>") == "250 OK"


def test_ehlo_hook_with_a_wrong_signature_is_refused_when_the_server_is_built(
    loop_kind: str,
) -> None:
    class Wrong:
        async def handle_EHLO(self, server: SMTP) -> str:
            return "250 HELP"

    with pytest.raises(TypeError, match=r"Unsupported handle_EHLO signature .*handle_EHLO\("):
        SMTP(Wrong())


# -- MAIL and RCPT -------------------------------------------------------------


class Transaction(Calls):
    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        self.record("MAIL", address, list(mail_options))
        if address.startswith("bad"):
            return "550 sender refused"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 sender ok"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        self.record("RCPT", address, list(rcpt_options))
        if address.startswith("bad"):
            return "550 recipient refused"
        envelope.rcpt_tos.append(address)
        return "250 recipient ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.record(
            "DATA", envelope.mail_from, list(envelope.mail_options), list(envelope.rcpt_tos)
        )
        self.record("CONTENT", envelope.content, envelope.original_content)
        return "250 queued as 42"


def test_mail_rcpt_data_hooks(server: Any, talk: Talk) -> None:
    hooks = Transaction()
    running = server(hooks)
    replies = talk(
        running.port,
        [
            "EHLO client.test",
            "MAIL FROM:<bad@example.com>",
            "RCPT TO:<b@example.com>",
            "MAIL FROM:<a@example.com> body=8bitmime SIZE=20",
            "RCPT TO:<bad@example.com>",
            "DATA",
            "RCPT TO:<b@example.com>",
            "RCPT TO:<c@example.com>",
            Data("Subject: x\r\n\r\n..dot\r\n"),
        ],
    )
    assert replies[1:] == [
        "550 sender refused",
        "503 Error: need MAIL command",
        "250 sender ok",
        "550 recipient refused",
        "503 Error: need RCPT command",
        "250 recipient ok",
        "250 recipient ok",
        "250 queued as 42",
    ]
    assert hooks.named("MAIL") == [
        ("bad@example.com", []),
        ("a@example.com", ["BODY=8BITMIME", "SIZE=20"]),
    ]
    assert hooks.named("RCPT") == [
        ("bad@example.com", []),
        ("b@example.com", []),
        ("c@example.com", []),
    ]
    assert hooks.named("DATA") == [
        ("a@example.com", ["BODY=8BITMIME", "SIZE=20"], ["b@example.com", "c@example.com"])
    ]
    # The client stuffed the dots; the hook sees the message as it was given.
    content = b"Subject: x\r\n\r\n..dot\r\n"
    assert hooks.named("CONTENT") == [(content, content)]


def test_data_hook_with_decode_data(server: Any, talk: Talk) -> None:
    hooks = Transaction()
    running = server(hooks, decode_data=True)
    replies = talk(running.port, [*MAIL, Data("Hello\r\n")])
    assert replies[-1] == "250 queued as 42"
    assert hooks.named("CONTENT") == [("Hello\r\n", b"Hello\r\n")]


def test_data_hook_returning_nothing_is_an_internal_error(
    server: Any, talk: Talk, caplog: pytest.LogCaptureFixture
) -> None:
    class Silent:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> None:
            return None

    running = server(Silent())
    replies = talk(running.port, [*MAIL, Data("x\r\n"), "NOOP"])
    assert replies[-2:] == [INTERNAL_ERROR, "250 OK"]
    assert "expected a reply string" in caplog.text


# -- process_message (deprecated) ----------------------------------------------


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize(("returned", "reply"), [(None, "250 OK"), ("250 kept", "250 kept")])
def test_process_message_fallback(
    server: Any, talk: Talk, flavour: str, returned: str | None, reply: str
) -> None:
    got: list[tuple[Any, ...]] = []

    class SyncOld:
        def process_message(
            self, peer: Any, mail_from: str, rcpt_tos: list[str], data: bytes
        ) -> str | None:
            got.append((peer, mail_from, rcpt_tos, data))
            return returned

    class AsyncOld:
        async def process_message(
            self, peer: Any, mail_from: str, rcpt_tos: list[str], data: bytes
        ) -> str | None:
            got.append((peer, mail_from, rcpt_tos, data))
            return returned

    running = server(SyncOld() if flavour == "sync" else AsyncOld())
    with pytest.warns(DeprecationWarning, match="process_message"):
        replies = talk(running.port, [*MAIL, Data("Body\r\n")])
    assert replies[-1] == reply
    ((peer, mail_from, rcpt_tos, data),) = got
    assert peer[0] == "127.0.0.1"
    assert (mail_from, rcpt_tos, data) == ("a@example.com", ["b@example.com"], b"Body\r\n")


# -- Deprecated server hooks -----------------------------------------------------


class OldServerHooks(SMTP):
    async def ehlo_hook(self) -> None:
        await self.push("250-XEHLOHOOK")

    async def rset_hook(self) -> None:
        await self.push("250-rset hook line")


def test_ehlo_hook_and_rset_hook(server: Any, raw: Callable[..., RawClient]) -> None:
    running = server(cls=OldServerHooks)
    client = raw(running.port)
    with pytest.warns(DeprecationWarning) as caught:
        client.send("EHLO client.test\r\n")
        ehlo = client.reply()
        client.send("RSET\r\n")
        rset = client.reply()
    messages = [str(warning.message) for warning in caught]
    assert any("ehlo_hook" in message for message in messages)
    assert any("rset_hook" in message for message in messages)
    assert ehlo[-2:] == ["250-XEHLOHOOK", "250 HELP"]
    assert ehlo[0] == "250-smtp.example.test"
    assert rset == ["250-rset hook line", "250 OK"]


def test_ehlo_hook_and_rset_hook_with_clients(server: Any, talk: Talk) -> None:
    running = server(cls=OldServerHooks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        replies = talk(running.port, ["EHLO client.test", "RSET"])
    assert replies[0].split("\n")[-2:] == ["XEHLOHOOK", "HELP"]
    assert replies[1] == "250 rset hook line\nOK"


# -- Failures ----------------------------------------------------------------


class Exploding:
    """Every hook raises, with a message that must never reach the client."""

    secret = "secret-detail-8731"

    async def handle_NOOP(
        self, server: SMTP, session: Session, envelope: Envelope, arg: str | None
    ) -> str:
        raise RuntimeError(f"NOOP {self.secret}")

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        raise KeyError(f"MAIL {self.secret}")

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        raise ValueError(f"RCPT {self.secret}")

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raise OSError(f"DATA {self.secret}")


def test_raising_hooks_give_451_and_the_session_goes_on(
    server: Any, talk: Talk, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="smtpkit.smtp")
    running = server(Exploding())
    replies = talk(
        running.port, ["EHLO client.test", "NOOP", "MAIL FROM:<a@example.com>", "HELO again"]
    )
    assert replies[1:] == [INTERNAL_ERROR, INTERNAL_ERROR, "250 smtp.example.test"]
    assert all(Exploding.secret not in reply for reply in replies)
    assert "Traceback" in caplog.text
    assert f"RuntimeError: NOOP {Exploding.secret}" in caplog.text
    assert "KeyError" in caplog.text


def test_raising_rcpt_and_data_hooks(
    server: Any, raw: Callable[..., RawClient], caplog: pytest.LogCaptureFixture
) -> None:
    class MailOk(Exploding):
        async def handle_MAIL(
            self,
            server: SMTP,
            session: Session,
            envelope: Envelope,
            address: str,
            options: list[str],
        ) -> str:
            envelope.mail_from = address
            return "250 OK"

        async def handle_RCPT(
            self,
            server: SMTP,
            session: Session,
            envelope: Envelope,
            address: str,
            options: list[str],
        ) -> str:
            if address.startswith("boom"):
                raise ValueError(f"RCPT {self.secret}")
            envelope.rcpt_tos.append(address)
            return "250 OK"

    running = server(MailOk())
    client = raw(running.port)
    client.send(
        "HELO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<boom@example.com>\r\n"
        "RCPT TO:<b@example.com>\r\nDATA\r\nbody\r\n.\r\nNOOP\r\nHELP\r\n"
    )
    lines = client.lines(8)
    assert lines[2:6] == [
        INTERNAL_ERROR,
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        INTERNAL_ERROR,
    ]
    assert lines[6] == INTERNAL_ERROR  # NOOP raises too
    assert lines[7].startswith("250 Supported commands:")
    assert all(Exploding.secret not in line for line in lines)
    assert "OSError: DATA secret-detail-8731" in caplog.text


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_handle_exception_decides_the_reply(server: Any, talk: Talk, flavour: str) -> None:
    errors: list[BaseException] = []

    class SyncDecides(Exploding):
        def handle_exception(self, error: Exception) -> str:
            errors.append(error)
            return "554 5.3.0 we broke"

    class AsyncDecides(Exploding):
        async def handle_exception(self, error: Exception) -> str:
            errors.append(error)
            return "554 5.3.0 we broke"

    running = server(SyncDecides() if flavour == "sync" else AsyncDecides())
    replies = talk(running.port, ["NOOP", "NOOP"])
    assert replies == ["554 5.3.0 we broke", "554 5.3.0 we broke"]
    assert [type(error) for error in errors] == [RuntimeError, RuntimeError]
    assert str(errors[0]) == f"NOOP {Exploding.secret}"


@pytest.mark.parametrize("outcome", ["none", "raise", "empty"])
def test_failing_handle_exception_falls_back_to_451(
    server: Any, talk: Talk, caplog: pytest.LogCaptureFixture, outcome: str
) -> None:
    class BadDecider(Exploding):
        async def handle_exception(self, error: Exception) -> str | None:
            if outcome == "raise":
                raise RuntimeError(f"handle_exception {self.secret}")
            return "" if outcome == "empty" else None

    running = server(BadDecider())
    replies = talk(running.port, ["NOOP", "RSET"])
    assert replies == [INTERNAL_ERROR, "250 OK"]
    assert Exploding.secret not in replies[0]
    if outcome == "raise":
        assert "handle_exception() raised" in caplog.text


def test_raising_smtp_method_in_subclass(
    server: Any, talk: Talk, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(SMTP):
        async def smtp_BREAK(self, arg: str | None) -> None:
            raise ZeroDivisionError("division secret-detail-8731")

    running = server(cls=Broken)
    replies = talk(running.port, ["BREAK", "NOOP"])
    assert replies == [INTERNAL_ERROR, "250 OK"]
    assert "ZeroDivisionError" in caplog.text


# -- Streaming DATA hooks ------------------------------------------------------


class Streaming(Calls):
    def __init__(self) -> None:
        super().__init__()
        self.finished = threading.Event()

    async def handle_DATA_CHUNK(
        self, server: SMTP, session: Session, envelope: Envelope, chunk: bytes
    ) -> None:
        self.record("CHUNK", chunk, envelope.content)

    async def handle_DATA_ABORT(
        self, server: SMTP, session: Session, envelope: Envelope, reason: str
    ) -> None:
        self.record("ABORT", reason, list(envelope.rcpt_tos))
        self.finished.set()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.record("DATA", envelope.content, envelope.original_content)
        self.finished.set()
        return "250 streamed"


def test_streaming_chunks_concatenate_to_the_content(server: Any, talk: Talk) -> None:
    hooks = Streaming()
    running = server(hooks)
    body = "".join(f"line {n:05d} .dot\r\n.{n}\r\n" for n in range(3000))
    replies = talk(running.port, [*MAIL, Data(body), "NOOP"])
    assert replies[-2:] == ["250 streamed", "250 OK"]
    chunks = hooks.named("CHUNK")
    assert b"".join(chunk for chunk, _ in chunks) == body.encode()
    # The content is streamed, never collected.
    assert all(content is None for _, content in chunks)
    assert hooks.named("DATA") == [(None, None)]
    assert hooks.named("ABORT") == []


def test_streaming_abort_on_size_limit(server: Any, talk: Talk) -> None:
    hooks = Streaming()
    running = server(hooks, data_size_limit=1000)
    replies = talk(running.port, [*MAIL, Data(("x" * 60 + "\r\n") * 40), "NOOP"])
    assert replies[-2:] == ["552 Error: Too much mail data", "250 OK"]
    assert hooks.named("ABORT") == [("552 Error: Too much mail data", ["b@example.com"])]
    assert hooks.named("DATA") == []


def test_streaming_abort_on_dropped_connection(server: Any, raw: Callable[..., RawClient]) -> None:
    hooks = Streaming()
    running = server(hooks)
    client = raw(running.port)
    client.send("HELO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
    assert client.lines(4)[-1].startswith("354")
    client.send("partial message\r\nno end")
    client.close()
    assert hooks.finished.wait(5)
    assert hooks.named("ABORT") == [("connection lost", ["b@example.com"])]
    assert hooks.named("DATA") == []


def test_streaming_hook_that_raises(
    server: Any, talk: Talk, caplog: pytest.LogCaptureFixture
) -> None:
    class BadChunk(Streaming):
        async def handle_DATA_CHUNK(
            self, server: SMTP, session: Session, envelope: Envelope, chunk: bytes
        ) -> None:
            raise RuntimeError("chunk secret-detail-8731")

    hooks = BadChunk()
    running = server(hooks)
    replies = talk(running.port, [*MAIL, Data("hello\r\n"), "NOOP"])
    assert replies[-2:] == [INTERNAL_ERROR, "250 OK"]
    assert hooks.named("ABORT") == [("the handler failed", ["b@example.com"])]
    assert hooks.named("DATA") == []
    assert "chunk secret-detail-8731" in caplog.text
