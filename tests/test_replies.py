"""Every reply the server can send, walked through real sessions, with and without
ENHANCEDSTATUSCODES (RFC 2034, RFC 3463).

Each step of the walk sends a command over a raw socket and names the reply line
the bare class sends: aiosmtpd's text, written out here, so a changed text fails.
With ``enhanced_status_codes`` off every line must be exactly that; with it on,
every 2xx/4xx/5xx line but the greeting and the replies to HELO/EHLO/LHLO must
carry ``class.subject.detail`` whose class is the code's first digit, followed by
the same text. The constants of :mod:`smtpkit._replies` are read from its source,
and each must have been seen during the walk, so a new reply cannot be forgotten.
"""

from __future__ import annotations

import ast
import base64
import logging
import re
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from conftest import RawClient, RunningServer, ServerFactory

from smtpkit import _replies
from smtpkit._limits import ConnectionLimiter
from smtpkit._replies import Reply
from smtpkit.auth import MemoryAuthenticator
from smtpkit.auth.mechanisms import OAuth2Mechanisms
from smtpkit.config import ServerConfig
from smtpkit.lmtp import LMTP
from smtpkit.routing import App
from smtpkit.smtp import SMTP

HOSTNAME = "mx.test"
IDENT = "Walk 1.0"
SOURCE = Path(_replies.__file__)
# RFC 3463 §2: class "." subject "." detail, after the code and its separator.
ENHANCED = re.compile(r"(?P<code>[245]\d\d)(?P<sep>[ -])(?P<enhanced>\d\.\d{1,3}\.\d{1,3})(?: |$)")
PLAIN = base64.b64encode(b"\0anne\0pw").decode()
WRONG = base64.b64encode(b"\0anne\0nope").decode()


def without_code(line: str) -> str:
    """``line`` without the enhanced code after its reply code, if it has one."""
    match = ENHANCED.match(line)
    if match is None:
        return line
    return line[:4] + line[match.end() :]


@dataclass
class Seen:
    """Every reply line of the walk, with what it must look like."""

    enhanced: bool
    lines: list[tuple[str, bool]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def check(self, line: str, bare: str | None, exempt: bool, on: str | None = None) -> None:
        """Record ``line``, the reply to a step whose bare reply is ``bare``."""
        self.lines.append((line, exempt))
        if self.enhanced and on is not None:
            expected_text: str | None = on
        else:
            expected_text = bare
        if not self.enhanced or exempt or line[:1] not in "245":
            if expected_text is not None and line != expected_text:
                self.problems.append(f"{line!r} != {expected_text!r}")
            return
        match = ENHANCED.match(line)
        if match is None or match["enhanced"][0] != line[0]:
            self.problems.append(f"{line!r} lacks an enhanced code of class {line[0]}")
        elif expected_text is not None and without_code(line) != without_code(expected_text):
            self.problems.append(f"{line!r} is not {expected_text!r} with a code")


class Session:
    """A raw-socket session that checks each reply line it reads."""

    def __init__(self, client: RawClient, seen: Seen) -> None:
        self.client = client
        self.seen = seen

    def expect(self, *bare: str | None, exempt: bool = False, on: str | None = None) -> None:
        """Read one reply per ``bare`` line expected (None: any text)."""
        for expected in bare:
            for line in self.client.reply():
                self.seen.check(line, expected, exempt, on)

    def say(self, command: str | bytes, *bare: str | None, **how: Any) -> None:
        self.client.send(command + ("\r\n" if isinstance(command, str) else b"\r\n"))
        self.expect(*bare, **how)

    def greet(self, verb: str = "EHLO") -> None:
        """Say EHLO (or HELO, LHLO) and read the reply, exempt from codes."""
        self.client.send(f"{verb} client.test\r\n")
        lines = self.client.reply()
        for line in lines:
            self.seen.check(line, None, exempt=True)
        if verb != "HELO":
            assert ("250-ENHANCEDSTATUSCODES" in lines) is self.seen.enhanced, lines


@dataclass
class Walk:
    """What the walk's steps need: servers, clients and the record of lines."""

    start: ServerFactory
    raw: Callable[..., RawClient]
    seen: Seen
    tls: tuple[ssl.SSLContext, ssl.SSLContext]

    def serve(self, handler: Any = None, **kwargs: Any) -> RunningServer:
        kwargs.setdefault("hostname", HOSTNAME)
        kwargs.setdefault("ident", IDENT)
        return self.start(handler, enhanced_status_codes=self.seen.enhanced, **kwargs)

    def session(self, running: RunningServer, *, greeting: bool = True) -> Session:
        session = Session(self.raw(running.port, greeting=False), self.seen)
        if greeting:
            session.expect(f"220 {HOSTNAME} {IDENT}", exempt=True)
        return session

    def starttls(self, session: Session) -> None:
        session.say("STARTTLS", "220 Ready to start TLS")
        session.client.sock = self.tls[1].wrap_socket(session.client.sock, server_hostname=HOSTNAME)


class Hooks(OAuth2Mechanisms):
    """Hooks whose replies the walk asks for by the NOOP argument."""

    async def handle_NOOP(self, server: Any, session: Any, envelope: Any, arg: str | None) -> Any:
        replies = {
            "plain": "250 hello",
            "coded": "250 2.1.0 fine",
            "busy": "452 busy",
            "multi": ["250-one", "250 two"],
            "wrong": "250 5.1.1 wrong class",
            "no-class": "550 9.1.1 no such class",
        }
        if arg == "raise":
            raise ConnectionRefusedError("the database is down")
        return replies.get(arg or "", "250 OK")

    async def handle_STARTTLS(self, server: Any, session: Any, envelope: Any) -> bool:
        return server.hostname != "refuses.test"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 Message accepted for delivery"


# ----------------------------------------------------------------------------
# The steps, one function per part of the protocol


def walk_commands(walk: Walk) -> None:
    s = walk.session(walk.serve(Hooks(), max_recipients=100, data_size_limit=5000))
    s.say("MAIL FROM:<a@example.com>", "503 Error: send HELO first")
    s.say("HELO", "501 Syntax: HELO hostname", exempt=True)
    s.say("EHLO", "501 Syntax: EHLO hostname", exempt=True)
    s.greet("HELO")
    s.say("MAIL FROM", "501 Syntax: MAIL FROM: <address>")
    s.say("RCPT TO:<b@example.com>", "503 Error: need MAIL command")
    s.say("MAIL FROM:<a@example.com>", "250 OK")
    s.say("RCPT TO", "501 Syntax: RCPT TO: <address>")
    s.greet()
    s.say("DATA", "503 Error: need RCPT command")
    s.say("MAIL FROM", "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]")
    s.say("MAIL FROM:<a@@example.com>", "553 5.1.3 Error: malformed address")
    s.say("MAIL FROM:<" + "a" * 300 + "@example.com>", "501 5.1.3 Path too long")
    s.say(
        "MAIL FROM:<a@example.com> BODY=9BIT", "501 Error: BODY can only be one of 7BIT, 8BITMIME"
    )
    s.say("MAIL FROM:<a@example.com> SMTPUTF8=yes", "501 Error: SMTPUTF8 takes no arguments")
    s.say("MAIL FROM:<a@example.com> SMTPUTF8", "501 Error: SMTPUTF8 disabled")
    s.say(
        "MAIL FROM:<a@example.com> SIZE=9000",
        "552 Error: message size exceeds fixed maximum message size",
    )
    s.say(
        "MAIL FROM:<a@example.com> FOO=1",
        "555 MAIL FROM parameters not recognized or not implemented",
    )
    s.say("MAIL FROM:<a@example.com>", "250 OK")
    s.say("MAIL FROM:<a@example.com>", "503 Error: nested MAIL command")
    s.say("RCPT TO", "501 Syntax: RCPT TO: <address> [SP <mail-parameters>]")
    s.say(
        "RCPT TO:<b@example.com> FOO=1", "555 RCPT TO parameters not recognized or not implemented"
    )
    s.say("RCPT TO:<b@example.com>", "250 OK")
    s.say("DATA x", "501 Syntax: DATA")
    s.say("DATA", "354 End data with <CR><LF>.<CR><LF>")
    s.say(b"x" * 1200 + b"\r\n.", "500 Line too long (see RFC5321 4.5.3.1.6)")
    s.say("MAIL FROM:<a@example.com>", "250 OK")
    s.client.send("".join(f"RCPT TO:<r{n}@example.com>\r\n" for n in range(101)))
    s.expect(*["250 OK"] * 100, "452 4.5.3 Error: too many recipients")
    s.say("DATA", "354 End data with <CR><LF>.<CR><LF>")
    s.say((b"y" * 900 + b"\r\n") * 6 + b".", "552 Error: Too much mail data")
    s.say("RSET x", "501 Syntax: RSET")
    s.say("RSET", "250 OK")
    s.say("QUIT x", "501 Syntax: QUIT")
    s.say("QUIT", "221 Bye")


def walk_other_commands(walk: Walk) -> None:
    s = walk.session(walk.serve(Hooks()))
    s.greet()
    commands = "AUTH DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET VRFY"
    s.say("HELP", f"250 Supported commands: {commands}")
    s.say("HELP NOOP", "250 Syntax: NOOP [ignored]")
    s.say("HELP XYZZY", f"501 Supported commands: {commands}")
    s.say("VRFY", "501 Syntax: VRFY <address>")
    s.say("VRFY <a@@example.com>", "502 Could not VRFY <a@@example.com>")
    s.say(
        "VRFY anne@example.com",
        "252 Cannot VRFY user, but will accept message and attempt delivery",
    )
    s.say("EXPN staff", "502 EXPN not implemented")
    s.say("STARTTLS x", "501 Syntax: STARTTLS")
    s.say("STARTTLS", "454 TLS not available")
    s.say("XYZZY", '500 Error: command "XYZZY" not recognized')
    s.say("", "500 Error: bad syntax")
    s.say(b"NOOP \x00", "501 5.5.2 Syntax error: NUL or bare CR in command")
    s.say("NOOP caf\u00e9", "500 Error: strict ASCII mode")
    s.say("NOOP " + "x" * 600, "500 Command line too long")
    s.say("AUTH " + "x" * 13000, "500 5.5.6 Authentication Exchange line is too long")
    walk_hook_replies(s)
    for _ in range(3):
        s.say("XYZZY", '500 Error: command "XYZZY" not recognized')
    s.say("XYZZY", "502 5.5.1 Too many unrecognized commands, goodbye.")


def walk_hook_replies(s: Session) -> None:
    """Replies from hooks: a default code is added, a wrong class is refused."""
    internal = "451 4.3.0 Requested action aborted: local error in processing"
    s.say("NOOP plain", "250 hello")
    s.say("NOOP coded", "250 2.1.0 fine")
    s.say("NOOP busy", "452 busy")
    s.client.send("NOOP multi\r\n")
    for line, bare in zip(s.client.reply(), ["250-one", "250 two"], strict=True):
        s.seen.check(line, bare, exempt=False)
    s.say("NOOP raise", internal)
    s.say("NOOP wrong", "250 5.1.1 wrong class", on=internal)
    s.say("NOOP no-class", "550 9.1.1 no such class", on=internal)
    s.say("NOOP", "250 OK")


def walk_utf8_and_decoding(walk: Walk) -> None:
    s = walk.session(walk.serve(Hooks(), enable_SMTPUTF8=True))
    s.say(b"NOOP \xff", "500 5.5.2 Error: invalid UTF-8 in command")
    s = walk.session(walk.serve(Hooks(), decode_data=True))
    s.greet()
    s.say("MAIL FROM:<a@example.com>", "250 OK")
    s.say("RCPT TO:<b@example.com>", "250 OK")
    s.say("DATA", "354 End data with <CR><LF>.<CR><LF>")
    s.say("caf\u00e9\r\n.", "500 Error: strict ASCII mode")
    s.say("MAIL FROM:<a@example.com>", "250 OK")
    s.say("RCPT TO:<b@example.com>", "250 OK")
    s.say("DATA", "354 End data with <CR><LF>.<CR><LF>")
    s.say("Subject: hi\r\n\r\nhello\r\n.", "250 Message accepted for delivery")


def walk_auth(walk: Walk) -> None:
    s = walk.session(walk.serve(Hooks()))
    s.greet()
    s.say(
        f"AUTH PLAIN {PLAIN}",
        "538 5.7.11 Encryption required for requested authentication mechanism",
    )
    users = MemoryAuthenticator({"anne": "pw"})
    running = walk.serve(Hooks(), auth_require_tls=False, authenticator=users, max_auth_failures=20)
    s = walk.session(running)
    s.greet("HELO")
    s.say(f"AUTH PLAIN {PLAIN}", "500 Error: command 'AUTH' not recognized")
    s.greet()
    s.say("AUTH", "501 Not enough value")
    s.say("AUTH PLAIN a b", "501 Too many values")
    s.say("AUTH FOO", "504 5.5.4 Unrecognized authentication type")
    s.say("AUTH PLAIN", "334 ")
    s.say("*", "501 5.7.0 Auth aborted")
    s.say("AUTH PLAIN !!!", "501 5.5.2 Can't decode base64")
    s.say("AUTH PLAIN " + base64.b64encode(b"no nul").decode(), "501 5.5.2 Can't split auth value")
    s.say("AUTH XOAUTH2 " + base64.b64encode(b"junk").decode(), None)
    s.say(f"AUTH PLAIN {WRONG}", "535 5.7.8 Authentication credentials invalid")
    s.say("MAIL FROM:<a@example.com>", "250 OK")
    s.say(f"AUTH PLAIN {PLAIN}", "503 5.5.1 Error: AUTH not permitted during a mail transaction")
    s.say("RSET", "250 OK")
    s.say(f"AUTH PLAIN {PLAIN}", "235 2.7.0 Authentication successful")
    s.say(f"AUTH PLAIN {PLAIN}", "503 Already authenticated")
    s = walk.session(walk.serve(Hooks(), auth_require_tls=False, authenticator=users))
    s.greet()
    for _ in range(2):
        s.say(f"AUTH PLAIN {WRONG}", "535 5.7.8 Authentication credentials invalid")
    s.say(
        f"AUTH PLAIN {WRONG}",
        "535 5.7.8 Authentication credentials invalid",
        "421 4.7.0 Too many failed authentication attempts, goodbye",
    )
    s = walk.session(walk.serve(Hooks(), auth_required=True))
    s.greet()
    s.say("MAIL FROM:<a@example.com>", "530 5.7.0 Authentication required")


def walk_tls(walk: Walk) -> None:
    server_context = walk.tls[0]
    s = walk.session(walk.serve(Hooks(), tls_context=server_context, require_starttls=True))
    s.greet()
    s.say("MAIL FROM:<a@example.com>", "530 Must issue a STARTTLS command first")
    walk.starttls(s)
    s.greet()
    s.say("STARTTLS", "554 5.5.1 Error: TLS already active")
    s.say("QUIT", "221 Bye")
    refusing = walk.serve(Hooks(), tls_context=server_context, hostname="refuses.test")
    s = Session(walk.raw(refusing.port, greeting=False), walk.seen)
    s.expect(f"220 refuses.test {IDENT}", exempt=True)
    s.greet()
    s.say("STARTTLS", "220 Ready to start TLS")
    s.client.sock = walk.tls[1].wrap_socket(s.client.sock, server_hostname=HOSTNAME)
    s.say("NOOP", "554 Command refused due to lack of security")


def walk_limits(walk: Walk) -> None:
    s = walk.session(walk.serve(Hooks(), command_call_limit={"NOOP": 1}))
    s.say("NOOP", "250 OK")
    s.say("NOOP", "421 4.7.0 NOOP sent too many times")
    running = walk.serve(Hooks(), connection_limiter=ConnectionLimiter(max_connections=1))
    first = walk.session(running)
    second = walk.session(running, greeting=False)
    second.expect("421 4.7.0 Too many connections, try again later")
    first.say("NOOP", "250 OK")
    running = walk.serve(Hooks())
    s = walk.session(running)
    running.loop.call_soon_threadsafe(running.protocols[-1].shutdown)
    s.expect(f"421 4.3.2 {HOSTNAME} Service shutting down")


def walk_timeouts(walk: Walk) -> None:
    """The idle timeout and the DATA rate: generous waits, no timed assertion."""
    idle = walk.session(walk.serve(Hooks(), timeout=1))
    slow = walk.session(walk.serve(Hooks(), data_min_rate=100_000, data_rate_window=1))
    slow.greet()
    slow.say("MAIL FROM:<a@example.com>", "250 OK")
    slow.say("RCPT TO:<b@example.com>", "250 OK")
    slow.say("DATA", "354 End data with <CR><LF>.<CR><LF>")
    slow.client.send(b"a little\r\n")
    for session, line in (
        (slow, f"421 4.4.2 {HOSTNAME} Error: data transfer too slow"),
        (idle, f"421 4.4.2 {HOSTNAME} Error: timeout exceeded"),
    ):
        session.client.sock.settimeout(30)
        session.client.timeout = 30
        session.expect(line)


def walk_lmtp_and_routes(walk: Walk) -> None:
    s = walk.session(walk.serve(Hooks(), cls=LMTP))
    s.say("LHLO", "501 Syntax: LHLO hostname", exempt=True)
    s.say("HELO client.test", '500 Error: command "HELO" not recognized')
    s.say("MAIL FROM:<a@example.com>", "503 Error: send LHLO first")
    s.greet("LHLO")
    app = App(ServerConfig(hostname=HOSTNAME, enhanced_status_codes=walk.seen.enhanced))

    @app.route("anne@example.com")
    def deliver(message: Any) -> None:
        """Accept mail for anne only."""

    running = walk.start(factory=app.protocol_factory())
    s = walk.session(running, greeting=False)
    s.expect(None, exempt=True)
    s.greet()
    s.say("MAIL FROM:<a@example.com>", "250 OK")
    s.say(
        "RCPT TO:<bart@example.com>",
        "550 5.1.1 <bart@example.com>: Recipient address rejected: no route",
    )
    s.say("RCPT TO:<anne@example.com>", "250 OK")
    s.say("DATA", "354 End data with <CR><LF>.<CR><LF>")
    s.say("Subject: hi\r\n\r\nhello\r\n.", "250 OK")


def walk_extensions(walk: Walk) -> None:
    """XCLIENT/XFORWARD, REQUIRETLS and the per-session message limit."""
    running = walk.serve(
        Hooks(),
        xclient_trusted_networks=["127.0.0.1/32"],
        xforward_trusted_networks=["192.0.2.0/24"],
        requiretls=True,
        max_messages_per_session=1,
    )
    s = walk.session(running)
    s.greet()
    s.say("XFORWARD ADDR=192.0.2.1", "550 5.7.0 Error: insufficient authorization")
    s.say("MAIL FROM:<a@example.com> REQUIRETLS", "530 5.7.10 REQUIRETLS needs a TLS session")
    s.say("MAIL FROM:<a@example.com>", "250 OK")
    s.say("XCLIENT ADDR=192.0.2.7", "503 5.5.1 Error: MAIL transaction in progress")
    s.say("RCPT TO:<b@example.com>", "250 OK")
    s.say("DATA", "354 End data with <CR><LF>.<CR><LF>")
    s.say(
        "Subject: hi\r\n\r\nhello\r\n.",
        "250 Message accepted for delivery",
        f"421 4.7.0 {HOSTNAME} Error: too many messages in one session",
    )


WALK = [
    walk_commands,
    walk_other_commands,
    walk_utf8_and_decoding,
    walk_auth,
    walk_tls,
    walk_limits,
    walk_timeouts,
    walk_lmtp_and_routes,
    walk_extensions,
]


# ----------------------------------------------------------------------------
# The constants, read from the module's source


def constants_in_source() -> dict[str, Reply]:
    """Every ``NAME = Reply(...)`` at the top of smtpkit/_replies.py, by name."""
    tree = ast.parse(SOURCE.read_text(encoding="utf-8"))
    names = [
        node.targets[0].id
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "id", None) == "Reply"
    ]
    return {name: getattr(_replies, name) for name in names}


def pattern(reply: Reply, enhanced: bool) -> re.Pattern[str]:
    """A regex for the lines ``reply`` sends, its ``{fields}`` matching any text."""
    line = reply.format(enhanced)
    parts = re.split(r"\{[a-z_]+\}", line)
    return re.compile(".+".join(re.escape(part) for part in parts))


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOSTNAME).configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return server_context, client_context


@pytest.mark.parametrize("enhanced", [False, True], ids=["bare", "enhanced"])
def test_the_walk_sends_the_expected_lines(
    enhanced: bool,
    server: ServerFactory,
    raw: Callable[..., RawClient],
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen = Seen(enhanced)
    walk = Walk(server, raw, seen, tls)
    with caplog.at_level(logging.ERROR, logger="smtpkit.smtp"):
        for step in WALK:
            step(walk)
    assert seen.problems == [], "\n".join(seen.problems)
    if enhanced:
        assert "handle_NOOP returned '250 5.1.1 wrong class'" in caplog.text
        assert "does not match reply code 250" in caplog.text
    # Every constant of smtpkit/_replies.py was sent at least once.
    lines = [line for line, _ in seen.lines]
    constants = constants_in_source()
    assert set(constants) == set(_replies.all_replies()), "a Reply made outside a NAME = line"
    missed = [
        name
        for name, reply in constants.items()
        if not any(pattern(reply, enhanced).fullmatch(line) for line in lines)
    ]
    assert missed == [], f"replies never seen in the walk: {missed}"


def test_the_enhanced_walk_has_codes_on_every_line_but_the_exempt() -> None:
    # The rule the walk applies, checked on its own against lines known both ways.
    seen = Seen(enhanced=True)
    seen.check("250 2.0.0 OK", "250 OK", exempt=False)
    seen.check("250 mx.test", None, exempt=True)
    seen.check("354 End data with <CR><LF>.<CR><LF>", None, exempt=False)
    assert seen.problems == []
    seen.check("250 OK", "250 OK", exempt=False)
    seen.check("550 2.0.0 Nope", None, exempt=False)
    seen.check("250 2.0.0 Other", "250 OK", exempt=False)
    assert len(seen.problems) == 3


def test_smtplib_sees_the_keyword(server: ServerFactory) -> None:
    on = server(Hooks(), enhanced_status_codes=True)
    off = server(Hooks())
    with smtplib.SMTP(on.host, on.port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("enhancedstatuscodes")
        assert client.noop() == (250, b"2.0.0 OK")
    with smtplib.SMTP(off.host, off.port, timeout=10) as client:
        client.ehlo()
        assert not client.has_extn("enhancedstatuscodes")
        assert client.noop() == (250, b"OK")


def test_the_app_and_a_config_turn_it_on_the_bare_class_leaves_it_off() -> None:
    class Handler:
        pass

    assert SMTP(Handler()).enhanced_status_codes is False
    assert SMTP(Handler(), config=ServerConfig()).enhanced_status_codes is True
    assert App().smtp_class().enhanced_status_codes is True
    off = ServerConfig(enhanced_status_codes=False)
    assert SMTP(Handler(), config=off).enhanced_status_codes is False
    assert (
        SMTP(Handler(), config=ServerConfig(), enhanced_status_codes=False).enhanced_status_codes
        is False
    )
    with pytest.raises(TypeError, match="enhanced_status_codes = 'yes': expected True or False"):
        SMTP(Handler(), enhanced_status_codes="yes")


@pytest.mark.parametrize(
    ("code", "enhanced", "problem"),
    [
        (250, "5.0.0", "does not match the class of reply 250"),
        (250, "2.0", "'class.subject.detail'"),
        (199, None, "from 200 to 599"),
    ],
)
def test_a_reply_constant_is_checked(code: int, enhanced: str | None, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        Reply(code, enhanced, "text")


def test_a_built_in_reply_costs_a_lookup() -> None:
    # The two encodings are made with the constant, not per reply.
    reply = _replies.TOO_MUCH_DATA
    assert reply.wire == (
        b"552 Error: Too much mail data\r\n",
        b"552 5.3.4 Error: Too much mail data\r\n",
    )
    assert (
        _replies.with_enhanced("552 Error: Too much mail data")
        == "552 5.3.4 Error: Too much mail data"
    )
    assert _replies.with_enhanced("250-first") == "250-2.0.0 first"
    assert _replies.with_enhanced("250 1.2.3.4 accepted") == "250 2.0.0 1.2.3.4 accepted"
    assert _replies.with_enhanced(b"451 later") == b"451 4.0.0 later"
    assert _replies.with_enhanced("334 VXNlcm5hbWU6") == "334 VXNlcm5hbWU6"
