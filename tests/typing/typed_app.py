"""A fully typed App: ``mypy --strict`` must accept it (tests/routing/test_typing.py).

Every decorator returns the function with its own type, so the calls at the
bottom type-check against the original signatures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from smtpkit import SMTP, App, AuthResult, Blueprint, Envelope, LoginPassword, ServerConfig, Session
from smtpkit.config import LimitsConfig
from smtpkit.lmtp import LMTP
from smtpkit.routing import RoutedMessage


@asynccontextmanager
async def lifespan(app: App) -> AsyncIterator[Mapping[str, Any]]:
    yield {"started": True}


app = App(
    ServerConfig(hostname="mx.example.com", limits=LimitsConfig(data_size=10_000_000)),
    lifespan=lifespan,
)
lmtp_app = App(server_class=LMTP, name="delivery")
bp = Blueprint("mailboxes")


@app.command("PING", syntax="PING [ignored]")
async def ping(server: SMTP, arg: str | None) -> None:
    await server.push("259 Pong")


@app.command("WHO")
def who(server: SMTP, arg: str | None) -> str:
    return "250 you"


@app.hook("RCPT")
async def local_only(
    server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
) -> str | None:
    return None if address.endswith("@example.com") else "550 5.7.1 not here"


@app.hook("EHLO")
def features(
    server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
) -> list[str]:
    return responses


@app.auth_mechanism("X-TOKEN")
async def token(server: SMTP, args: list[str]) -> AuthResult:
    answer = await server.challenge_auth("token")
    return AuthResult(success=answer == b"ok")


@app.authenticator(required=False)
def check(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    return AuthResult(success=auth_data == LoginPassword(b"anne", b"pw"))


class QuotaError(Exception):
    pass


@app.exception_handler(QuotaError)
async def over_quota(error: QuotaError) -> str:
    return "452 4.2.2 over quota"


@bp.route("(user)", user="[a-z.]+")
async def inbox(message: RoutedMessage) -> str:
    return f"250 stored for {message.capture['user']}"


@bp.route("postmaster")
def postmaster(message: RoutedMessage) -> None:
    print(message.message["Subject"])


app.register_blueprint(bp, domain="example.com")
app.register_blueprint(bp, name="org", domain="example.org")

smtp_class: type[SMTP] = app.smtp_class
server: SMTP = app.smtp_class()
factory = app.protocol_factory()
connection: SMTP = factory()

# The decorated functions keep their types.
reply: str = who(server, None)
status: str | None = check(server, Session(server.loop), Envelope(), "PLAIN", None).message
pending_ping = ping(server, "x")
pending_ping.close()
