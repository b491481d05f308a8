"""The smallest App: a new SMTP command, PING.

Run it with ``python examples/ping_server.py`` and talk to it::

    $ python -c "import smtplib; print(smtplib.SMTP('127.0.0.1', 8025).docmd('PING'))"
    (259, b'Pong')
"""

from __future__ import annotations

from smtpkit import SMTP, App, ServerConfig

app = App(ServerConfig(hostname="ping.example.test"))


@app.command("PING", syntax="PING [ignored]")
async def ping(server: SMTP, arg: str | None) -> None:
    """Answer PING with Pong (the argument, if any, is ignored)."""
    await server.push("259 Pong")


if __name__ == "__main__":
    app.run()
