"""Type errors ``mypy --strict`` must report: each line marked ``# error``.

tests/routing/test_typing.py checks that mypy fails on exactly these lines.
"""

from __future__ import annotations

from smtpkit import SMTP, App
from smtpkit.routing import RoutedMessage

app = App()


@app.command("PING")  # error: the argument is a str or None, not an int
async def ping(server: SMTP, arg: int) -> None:
    await server.push("259 Pong")


@app.command("PONG")
async def pong(server: SMTP, arg: str | None) -> None:
    await server.push("259 Ping")


pong("not a server", None)  # error: the decorator kept pong's signature


@app.route("(user)@example.com")  # error: a route receives a RoutedMessage
async def inbox(message: str) -> str:
    return "250 OK"


@app.route("postmaster@example.com")  # error: a route returns a reply string or None
def postmaster(message: RoutedMessage) -> int:
    return 250


app.hook("LHLO")  # error: not a hook verb
app.register_blueprint(app)  # error: only blueprints
