"""An authenticated submission server (RFC 6409): STARTTLS, then AUTH, then mail.

* Nothing but EHLO, NOOP, STARTTLS and QUIT before TLS (``tls.require_starttls``).
* AUTH PLAIN/LOGIN only over TLS, and required before MAIL (an App with an
  authenticator requires it). The authenticator runs in a worker thread, so
  a slow password hash never blocks the event loop.
* A user may only send as themselves: ``MAIL FROM`` must be ``<login>@<domain>``.
* Accepted mail is queued in a Maildir (``$SUBMISSION_OUTBOX``, default
  ``./outbox``) for a relay to pick up.

Settings come from the environment, like any smtpkit server:

    SMTPKIT_TLS__CERT_FILE=cert.pem SMTPKIT_TLS__KEY_FILE=key.pem \\
    SUBMISSION_PASSWORD_FILE=passwords python examples/submission_server.py

``python -m smtpkit.auth add-user passwords anne`` writes the password file.
Without a password file, ``SUBMISSION_USERS="anne:secret,bart:other"`` gives
in-memory users (for trying it out).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from smtpkit import SMTP, App, Envelope, ServerConfig, Session
from smtpkit.auth import LoginPassword, MemoryAuthenticator, PasswordFileAuthenticator
from smtpkit.handlers import Mailbox

DOMAIN = os.environ.get("SUBMISSION_DOMAIN", "example.com")


def load_config(env: Mapping[str, str]) -> ServerConfig:
    """The config from ``SMTPKIT_…`` variables, with STARTTLS required."""
    config = ServerConfig.load(env=env).replace(**{"tls.require_starttls": True})
    if config.tls.cert_file is None and config.tls.context is None:
        raise SystemExit("set SMTPKIT_TLS__CERT_FILE (and SMTPKIT_TLS__KEY_FILE): TLS is required")
    return config


def load_authenticator(env: Mapping[str, str]) -> PasswordFileAuthenticator | MemoryAuthenticator:
    """A password file when ``SUBMISSION_PASSWORD_FILE`` is set, else ``SUBMISSION_USERS``."""
    path = env.get("SUBMISSION_PASSWORD_FILE")
    if path:
        return PasswordFileAuthenticator(path)
    pairs = (item.partition(":") for item in env.get("SUBMISSION_USERS", "").split(","))
    users = {user.strip(): password for user, _, password in pairs if user.strip()}
    if not users:
        raise SystemExit("set SUBMISSION_PASSWORD_FILE, or SUBMISSION_USERS=user:password,…")
    return MemoryAuthenticator(users)


def create_app(env: Mapping[str, str] = os.environ) -> App:
    """The submission app, configured from ``env``."""
    app = App(load_config(env), name="submission")
    app.set_authenticator(load_authenticator(env))
    outbox = Mailbox(env.get("SUBMISSION_OUTBOX", "outbox"))

    @app.hook("MAIL")
    async def own_address_only(
        server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str | None:
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else b""
        if address.lower() != f"{login.decode('utf-8', 'replace')}@{DOMAIN}".lower():
            return f"553 5.7.1 <{address}>: you may only send as yourself"
        return None

    @app.hook("DATA")
    def queue(server: SMTP, session: Session, envelope: Envelope) -> str:
        # A plain function: the App runs it in a worker thread (disk I/O).
        outbox.handle_message(outbox.prepare_message(session, envelope))
        return "250 2.0.0 Queued for delivery"

    return app


if __name__ == "__main__":
    create_app().run()
